-- edgegov fleet archive, version 3: the sealed pull's head attestation of each dump.
-- attested: 1 checked out, 0 failed, NULL when the device gave none.

ALTER TABLE incidents ADD COLUMN attested INTEGER;
ALTER TABLE incidents ADD COLUMN attest_text TEXT;
