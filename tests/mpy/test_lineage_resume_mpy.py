# A board that reboots goes on with its lineage's hash chain (Lineage.resume, as
# firmware/edgegov_fw/boot_main.py does): the ring verifies across every reboot.
#   micropython tests/mpy/runner.py test_lineage_resume_mpy
import hashlib

from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.envelope import Envelope
from edgegov.core.events import Telemetry
from edgegov.core.governor import Governor
from edgegov.core.lineage import Lineage
from edgegov.core.ring import RingLog
from edgegov.core.verify import verify

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
KEY = b"resume-test-key-0123456789abcdef"


def _env():
    with open(HERE + "/data/spindle-cell.cbor", "rb") as f:
        blob = f.read()
    return Envelope.from_blob(blob, hashlib.sha256(blob).digest())


def _boots(env, resume):
    bd = RamBlockDevice(1024, 8)
    RingLog(bd).format()
    for boot in range(3):
        ring = RingLog(bd)
        ring.recover()
        lineage = Lineage(ring, env, KEY, checkpoint_every=8)
        if resume:
            lineage.resume()
        gov = Governor(env, KEY)
        lineage.boot(gov, 0, boot)
        values = {}
        for name in env.in_names:
            values[name] = False
        for t in range(1, 12 + boot):
            ev = Telemetry(values)
            lineage.record(ev, t, gov.handle(ev, t), gov)
    return RingLog(bd)


def test_a_resumed_chain_verifies_across_reboots():
    ring = _boots(_env(), True)
    ring.recover()
    rep = verify(ring.read_all(), (), KEY)
    assert rep.ok, str(rep.first_bad)
    assert rep.checkpoints >= 6 and rep.uncovered_head == 0


def test_without_resume_the_chain_breaks_at_the_reboot():
    ring = _boots(_env(), False)
    ring.recover()
    assert not verify(ring.read_all(), (), KEY).ok
