# ruff: noqa: E741, UP031 -- MicroPython 1.9.2: %-formatting
# egr: the lineage RAM ring of the minimal governor (micro:bit v1, MicroPython 1.9.2).
# Same sector and frame format as the core's RingLog (docs/lineage-format.md), so a pulled
# image scans with edgegov.core.ring.scan_image. Module-level state, no classes: every
# function object costs ~70 bytes of a ~9 KB heap. CRC-32/ISO-HDLC on 16-bit halves with
# nibble tables (small ints only; no binascii on this port).
from egc import RB, RN

TH = (0, 0x1DB7, 0x3B6E, 0x26D9, 0x76DC, 0x6B6B, 0x4DB2, 0x5005,
      0xEDB8, 0xF00F, 0xD6D6, 0xCB61, 0x9B64, 0x86D3, 0xA00A, 0xBDBD)
TL = (0, 0x1064, 0x20C8, 0x30AC, 0x4190, 0x51F4, 0x6158, 0x713C,
      0x8320, 0x9344, 0xA3E8, 0xB38C, 0xC2B0, 0xD2D4, 0xE278, 0xF21C)
M = bytearray(RB * RN)
for _ in range(RB * RN):
    M[_] = 255
BLK = -1
OFF = RB
SEQ = 0
ES = 0
SH = 0
SL = 0


def crc(m, a, b, h, l):
    # zlib.crc32(m[a:b], (h << 16) | l) as (hi, lo) halves
    h ^= 0xFFFF
    l ^= 0xFFFF
    for i in range(a, b):
        l ^= m[i]
        for _ in (0, 1):
            k = l & 15
            l = ((l >> 4) | ((h & 15) << 12)) ^ TL[k]
            h = (h >> 4) ^ TH[k]
    return h ^ 0xFFFF, l ^ 0xFFFF


def w32(p, v):
    for i in (0, 8, 16, 24):
        M[p] = (v >> i) & 255
        p += 1


def sect():
    # start the next sector: erased, header (magic, version 1, header size 28), header CRC
    global BLK, OFF, ES, SH, SL
    BLK = (BLK + 1) % RN
    p = BLK * RB
    for i in range(p, p + RB):
        M[i] = 255
    w32(p, 0x4C524745)  # b"EGRL"
    w32(p + 4, 0x1C01)
    w32(p + 8, ES)
    w32(p + 12, SEQ)
    w32(p + 16, RB)
    SH, SL = crc(M, p, p + 20, 0, 0)
    w32(p + 20, SH << 16 | SL)
    OFF = 28
    ES += 1


def put(src, n):
    # one frame: length, sequence, record, CRC chained from the sector header's
    global OFF, SEQ
    if OFF + n + 10 > RB:
        sect()
    p = BLK * RB + OFF
    w32(p, n | SEQ << 16)
    w32(p + 4, SEQ >> 16)
    for i in range(n):
        M[p + 6 + i] = src[i]
    h, l = crc(M, p, p + 6 + n, SH, SL)
    w32(p + 6 + n, h << 16 | l)
    OFF += n + 10
    SEQ += 1
