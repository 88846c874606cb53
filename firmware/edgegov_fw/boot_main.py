# main.py of a full-core board (written by edgegov deploy): boot safe, then run the loop.
import gc

import egboard
from edgegov.core.blockdev import RamBlockDevice
from edgegov.core.envelope import Envelope
from edgegov.core.lineage import Lineage
from edgegov.core.ring import RingLog
from edgegov_fw.hal_machine import MachineHal
from edgegov_fw.loop import BoardLoop


def _ring():
    if egboard.LINEAGE == "flash":
        from edgegov.core.blockdev import MpBlockDevice
        import rp2  # noqa: F401 - rp2.Flash; other ports: esp32.Partition / pyb.Flash

        return RingLog(MpBlockDevice(rp2.Flash()))
    return RingLog(RamBlockDevice(egboard.RING_BLOCK, egboard.RING_BLOCKS))


def _store():
    from edgegov_fw.envstore import EnvelopeStore, FileBlockDevice, store_blocks

    k = egboard.ENVELOPE_SLOT_BLOCKS
    bd = FileBlockDevice("envelope.slots", egboard.ENVELOPE_BLOCK, store_blocks(k))
    return EnvelopeStore(bd, 0, k)


def main():
    hal = MachineHal(egboard)
    hal.set_estop(True)  # before anything else can fail
    key = open("device.key", "rb").read()
    store = _store()  # the envelope in force: pushed over the link, else the deployed one
    blob = store.boot_blob(open("envelope.cbor", "rb").read())
    ring = _ring()
    found = ring.recover()
    if found.count == 0:
        ring.format()
    env = Envelope.from_blob(blob, __import__("hashlib").sha256(blob).digest())
    lineage = Lineage(ring, env, key)
    lineage.resume()  # the hash chain goes on from the last checkpoint the ring holds
    loop = BoardLoop(hal, env, lineage, key, blob, store)
    loop.boot()
    gc.collect()
    loop.run()


main()
