# A deterministic governed run recorded into a RAM ring, identical code on CPython and
# MicroPython: ``image(blob)`` returns the ring image. The cross-runtime test compares
# the two images byte for byte (the lineage must be bit-exact across implementations).
import sys

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, _HERE + "/../../runtime")

from edgegov.core import codes  # noqa: E402
from edgegov.core.auth import sign_op  # noqa: E402
from edgegov.core.blockdev import RamBlockDevice  # noqa: E402
from edgegov.core.envelope import Envelope  # noqa: E402
from edgegov.core.events import TICK, Command, Fault, Operator, Telemetry  # noqa: E402
from edgegov.core.governor import Governor  # noqa: E402
from edgegov.core.lineage import Lineage  # noqa: E402
from edgegov.core.ring import RingLog  # noqa: E402

KEY = b"cross-runtime-key-0123456789abcd"


def events(device_id):
    ok = {"door_closed": True, "estop_button": False, "hydraulic_pressure": 2000}
    out = [(0, Telemetry(ok))]
    counter = [0]

    def op(action, arg=0):
        counter[0] += 1
        return Operator(action, arg, counter[0], sign_op(KEY, device_id, action, arg, counter[0]))

    out.append((1, op(codes.OP_RESET)))
    out.append((2, op(codes.OP_ARM)))
    t = 2
    seq = 0
    spindle = 0
    for k in range(400):
        t += 10
        seq += 1
        spindle = (spindle + 37 * k) % 8500
        values = {"spindle": spindle, "press": (k * 13) % 1300, "coolant": k % 101}
        if k % 97 == 5:
            values["spindle"] = float("nan")
        if k % 89 == 7:
            values["turbo"] = 1
        out.append((t, Command(seq, values)))
        if k % 5 == 0:
            out.append((t, Telemetry(ok)))
        if k % 50 == 25:
            out.append((t + 1, op(codes.OP_APPROVE, seq)))
        if k == 300:
            out.append((t + 2, Telemetry({"door_closed": False, "estop_button": False,
                                          "hydraulic_pressure": 2000})))
        if k % 7 == 0:
            out.append((t + 3, TICK))
        if k == 350:
            out.append((t + 4, Fault(2)))
    return out


def image(blob, digest=b"\x00" * 32):
    env = Envelope.from_blob(blob, digest)
    ring = RingLog(RamBlockDevice(2048, 16))
    ring.format()
    lineage = Lineage(ring, env, KEY, checkpoint_every=50)
    gov = Governor(env, KEY)
    lineage.boot(gov, 0, boot_count=2, fw_version="x", envelope_blob=blob, digest=digest)
    for now, event in events(env.device_id):
        lineage.record(event, now, gov.handle(event, now), gov)
    lineage.checkpoint(gov, 5000)
    return ring.image()


if __name__ == "__main__":
    data = open(sys.argv[1], "rb").read()
    digest = open(sys.argv[2], "rb").read()
    out = image(data, digest)
    print(len(out))
    step = 512
    for i in range(0, len(out), step):
        chunk = out[i : i + step]
        print("".join("%02x" % b for b in chunk))
