"""Gateway lineage files across reboots: the writer resumes the ring and the hash chain."""

from edgegov.core.events import TICK, Command
from edgegov.core.governor import Governor
from edgegov.core.replay import Replayer
from edgegov.core.verify import verify
from edgegov.demo import DEMO_KEY, default_envelope
from edgegov.host.lineage_store import open_lineage, read_dump


def test_reopening_a_lineage_file_continues_its_chain_and_replays(tmp_path):
    compiled = default_envelope()
    from edgegov.core.envelope import Envelope

    env = Envelope.from_blob(compiled.blob, compiled.digest)
    path = tmp_path / "gw.lineage"
    for boot in range(3):
        lineage = open_lineage(path, env, DEMO_KEY, durable=False, checkpoint_every=8)
        gov = Governor(env, DEMO_KEY)
        lineage.boot(gov, 0, boot_count=boot, envelope_blob=compiled.blob)
        for t in range(1, 30):
            event = TICK if t % 3 else Command(t, {"spindle": 0})
            lineage.record(event, t * 300, gov.handle(event, t * 300), gov)
        lineage.device.close()  # no orderly checkpoint: the next boot resumes mid-segment
    dump = read_dump(path)
    report = verify(dump.records, dump.problems, DEMO_KEY, dump.offsets, dump.genesis_seq)
    assert report.ok, [str(f) for f in report.findings]
    boots = [p for _, p in dump.records if p[1] == 1]
    assert len(boots) == 3
    replay = Replayer(dump.envelopes()).run(dump.records)
    assert replay.identical and [k for _, k in replay.anchors] == ["boot"] * 3
