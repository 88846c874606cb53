"""The Modbus register map of one device, derived from its envelope: pure and deterministic.

The same envelope always gives the same map (channels in the envelope's order, which is
sorted by name); nothing here touches a socket. ``docs/modbus.md`` documents the layout;
``edgegov modbus map FILE [--json]`` prints it for a device.

Layout (addresses are 0-based protocol addresses; unit id 1 by default):

Holding registers (FC3 read, FC6/FC16 write), written by the PLC:

    H0            operator action code (0 none, 1 arm … 8 deny; refused unless enabled)
    H1            operator argument (int16)
    H2            heartbeat: the PLC must keep changing it (the Modbus link-liveness source)
    H3 …          one proposal per channel, scaled integer, 1 word (int16) or 2 words (int32)
    Hs            planner session (the register after the last proposal): a PLC program
                  writes a new value when it starts; a changed value starts a new session

Input registers (FC4), read by the PLC:

    I0 state · I1 mode · I2 link · I3 e-stop output · I4 trip causes · I5 faults
    I6 last verdict · I7 last reason · I8 last rule index (0xFFFF none) · I9 last margin
    I10 last exception code sent · I11 last heartbeat counted
    I12-13 writes decided (uint32) · I14-15 writes refused (uint32) · I16-17 t_ms (uint32)
    I18 …         the governed output per channel, same widths and order as the proposals

Identity block (input registers at a fixed address, whatever the envelope):

    I900          map format version (MAP_VERSION)
    I901-904      the compiled envelope's SHA-256, bytes 0-7 (I901 = bytes 0-1, high first)
    I905-908      the map hash: SHA-256 over the envelope hash and the register layout,
                  bytes 0-7 — what a PLC program compares before it writes anything

Pinned addresses: ``[modbus.addresses]`` in the envelope pins a channel's proposal to
holding register N and its governed output to input register N (N in 32..899, the same
number in both tables), so adding a channel never moves it. Unpinned channels keep the
sequential layout above (H3…, I18…, in name order, counting only unpinned channels).
The pins are host-side (the governor decides the same with any layout), so they are not in
the envelope's blob; they are in the map hash.

Coils (FC1 read, FC5/FC15 write): C0 e-stop request (write 1 = stop).
Discrete inputs (FC2): D0 e-stop output asserted · D1 tripped · D2 armed · D3 link ok.

Values: a channel whose widest range (every mode, approved ranges included, and its safe
value) fits in a signed 16-bit word takes one register (two's complement); otherwise two
registers holding a signed 32-bit value, **high word first** (big-endian word order, "ABCD").
uint32 counters use the same word order.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

H_OP_ACTION = 0
H_OP_ARG = 1
H_HEARTBEAT = 2
H_PROPOSALS = 3

I_STATE = 0
I_MODE = 1
I_LINK = 2
I_ESTOP = 3
I_CAUSES = 4
I_FAULTS = 5
I_VERDICT = 6
I_REASON = 7
I_RULE = 8
I_MARGIN = 9
I_EXCEPTION = 10
I_HEARTBEAT = 11
I_DECIDED = 12
I_REFUSED = 14
I_TIME = 16
I_OUTPUTS = 18

I_IDENT = 900  # the identity block: map version, envelope hash, map hash
I_MAP_VERSION = I_IDENT
I_ENVELOPE_HASH = I_IDENT + 1  # 4 registers
I_MAP_HASH = I_IDENT + 5  # 4 registers
IDENT_COUNT = 9
MAP_VERSION = 1
PIN_MIN = 32  # pinned channel registers: PIN_MIN <= N, N + words <= I_IDENT
PIN_END = I_IDENT

C_ESTOP_REQUEST = 0

D_ESTOP = 0
D_TRIPPED = 1
D_ARMED = 2
D_LINK_OK = 3
N_DISCRETE = 4

NO_RULE = 0xFFFF
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

STATUS_FIELDS = (
    ("state", I_STATE, 1), ("mode", I_MODE, 1), ("link", I_LINK, 1), ("estop", I_ESTOP, 1),
    ("trip_causes", I_CAUSES, 1), ("faults", I_FAULTS, 1), ("verdict", I_VERDICT, 1),
    ("reason", I_REASON, 1), ("rule", I_RULE, 1), ("margin", I_MARGIN, 1),
    ("exception", I_EXCEPTION, 1), ("heartbeat", I_HEARTBEAT, 1), ("decided", I_DECIDED, 2),
    ("refused", I_REFUSED, 2), ("t_ms", I_TIME, 2),
)


@dataclass(frozen=True)
class ChannelSlot:
    """Where one channel lives in the map and how its value is encoded."""

    name: str
    index: int  # the channel's index in the envelope
    unit: str
    resolution: str
    words: int  # 1: int16, 2: int32 high word first
    proposal: int  # holding register address
    output: int  # input register address
    lo: int  # widest scaled range over every mode (approved ranges included)
    hi: int

    pinned: bool = False

    @property
    def kind(self) -> str:
        return "int16" if self.words == 1 else "int32"

    def where(self) -> str:
        """``H5/I20`` (or ``H5-6/I20-21`` for a pair): where a PLC finds this channel."""
        def span(prefix: str, first: int) -> str:
            return f"{prefix}{first}" + (f"-{first + 1}" if self.words == 2 else "")

        return f"{span('H', self.proposal)}/{span('I', self.output)}"


@dataclass(frozen=True)
class RegisterMap:
    """The register map of one envelope (see the module docstring for the layout)."""

    device_id: str
    channels: tuple[ChannelSlot, ...]
    rules: tuple[str, ...]
    modes: tuple[str, ...]
    holding_count: int
    input_count: int
    envelope_digest: bytes = b""
    holes: frozenset = field(default=frozenset())  # holding registers no channel uses

    @property
    def output_end(self) -> int:
        """One past the last status or output input register (before the identity block)."""
        return max([I_OUTPUTS] + [s.output + s.words for s in self.channels])

    @property
    def map_digest(self) -> bytes:
        """SHA-256 over the envelope hash and the layout: changes when any register moves."""
        text = ";".join(f"{s.name}:{s.words}:{s.proposal}:{s.output}" for s in self.channels)
        return hashlib.sha256(b"edgegov-modbus-map/%d\0" % MAP_VERSION + self.envelope_digest
                              + text.encode()).digest()

    def ident_words(self) -> list[int]:
        """The identity block (I900 …): version, envelope hash and map hash, 8 bytes each."""
        def words(digest: bytes) -> list[int]:
            d = digest[:8].ljust(8, b"\0")
            return [int.from_bytes(d[i:i + 2], "big") for i in range(0, 8, 2)]

        return [MAP_VERSION, *words(self.envelope_digest), *words(self.map_digest)]

    @property
    def session(self) -> int:
        """The session register: right after the last proposal register."""
        return self.holding_count - 1

    @property
    def layout(self) -> tuple[tuple[int, int], ...]:
        """(channel index, words) per channel, in register order: what ``encode_all``
        takes to build the proposal or output registers from per-channel values."""
        return tuple((s.index, s.words) for s in self.channels)

    def proposal_words(self, values: dict) -> list[int]:
        """Every proposal register, in order from ``H_PROPOSALS``, for ``values`` (scaled,
        by channel name; every channel must be given): what a PLC writes after its
        heartbeat."""
        return encode_all(self.layout, [values[s.name] for s in self.channels])

    def proposal_request(self, heartbeat: int, values: dict) -> list[int]:
        """One FC16 from ``H_HEARTBEAT`` through the last proposal register (not the session
        register after it): the heartbeat,
        then every channel's proposal (``values`` scaled, by name) at its address; registers
        between pinned channels are 0 (the gateway ignores them). The recommended write."""
        words = [0] * (self.session - H_HEARTBEAT)  # the session register is written apart
        words[0] = heartbeat & 0xFFFF
        for s in self.channels:
            k = s.proposal - H_HEARTBEAT
            words[k:k + s.words] = encode(values[s.name], s.words)
        return words

    def slot(self, name: str) -> ChannelSlot:
        for s in self.channels:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict:
        """A JSON-able description (what ``edgegov modbus map --json`` prints)."""
        return {
            "device": self.device_id,
            "word_order": "high word first (ABCD)",
            "holding": {"op_action": H_OP_ACTION, "op_arg": H_OP_ARG,
                        "heartbeat": H_HEARTBEAT, "session": self.session,
                        "count": self.holding_count},
            "input": {**{name: addr for name, addr, _ in STATUS_FIELDS},
                      "count": self.input_count},
            "coils": {"estop_request": C_ESTOP_REQUEST},
            "discrete_inputs": {"estop": D_ESTOP, "tripped": D_TRIPPED, "armed": D_ARMED,
                                "link_ok": D_LINK_OK},
            "identity": {"map_version": I_MAP_VERSION, "envelope_hash": I_ENVELOPE_HASH,
                         "map_hash": I_MAP_HASH, "values": self.ident_words(),
                         "envelope_sha256": self.envelope_digest.hex(),
                         "map_sha256": self.map_digest.hex()},
            "channels": [asdict(s) | {"kind": s.kind} for s in self.channels],
            "modes": list(self.modes),
            "rules": list(self.rules),
        }


def _width(lo: int, hi: int) -> int:
    return 1 if INT16_MIN <= lo and hi <= INT16_MAX else 2


def build_map(env, pins: dict[str, int] | None = None) -> RegisterMap:
    """The register map of a core ``Envelope``: pinned channels at their addresses, the
    others in envelope order from H3/I18 (``pin_problems`` says whether the pins fit)."""
    pins = pins or {}
    slots = []
    h, i = H_PROPOSALS, I_OUTPUTS
    for c, name in enumerate(env.ch_names):
        lo, hi = _span(env, c)
        words = _width(lo, hi)
        at = pins.get(name)
        slots.append(ChannelSlot(name, c, env.ch_units[c] or "", str(env.ch_res[c]), words,
                                 h if at is None else at, i if at is None else at, lo, hi,
                                 at is not None))
        if at is None:
            h += words
            i += words
    used = {a for s in slots for a in range(s.proposal, s.proposal + s.words)}
    session = max([H_PROPOSALS] + [a + 1 for a in used])  # right after the last proposal
    holes = frozenset(set(range(H_PROPOSALS, session)) - used)
    return RegisterMap(env.device_id, tuple(slots), tuple(env.rules), tuple(env.modes),
                       session + 1,
                       I_IDENT + IDENT_COUNT, bytes(getattr(env, "digest", b"") or b""), holes)


def _span(env, c: int) -> tuple[int, int]:
    """The widest scaled range of channel ``c``: every mode, approvals, the safe value."""
    modes = range(len(env.modes))
    lo = min([env.mode_amin[m][c] for m in modes] + [env.ch_safe[c]])
    hi = max([env.mode_amax[m][c] for m in modes] + [env.ch_safe[c]])
    return lo, hi


def pin_problems(env, pins: dict[str, int]) -> list[tuple[tuple, str]]:
    """Where pinned addresses do not fit: outside 32..899, or sharing a register with
    another channel (pinned or not). Locations are ``modbus.addresses.NAME``."""
    if not pins:
        return []
    m = build_map(env, pins)
    problems = []
    owner: dict[tuple[str, int], ChannelSlot] = {}
    for s in sorted(m.channels, key=lambda s: (not s.pinned, s.name)):
        loc = ("modbus", "addresses", s.name)
        if s.pinned and not (PIN_MIN <= s.proposal and s.proposal + s.words <= PIN_END):
            problems.append((loc, f"must lie in {PIN_MIN}..{PIN_END - s.words} ({s.name} "
                                  f"takes {s.words} register{'s' if s.words == 2 else ''}; "
                                  f"got {s.proposal})"))
            continue
        for table, first in (("H", s.proposal), ("I", s.output)):
            clash = {owner.get((table, a)) for a in range(first, first + s.words)} - {None}
            if clash:
                other = sorted(clash, key=lambda o: o.name)[0]
                pin, hit = (s, other) if s.pinned else (other, s)  # pinned ones claim first
                what = "" if hit.pinned else " (unpinned: pin it as well, or move this one)"
                problems.append((("modbus", "addresses", pin.name),
                                 f"{pin.name} at {pin.where()} overlaps {hit.name} at "
                                 f"{hit.where()}{what}"))
                break
        else:
            for table, first in (("H", s.proposal), ("I", s.output)):
                for a in range(first, first + s.words):
                    owner[(table, a)] = s
    return problems


def map_of(compiled) -> RegisterMap:
    """The register map of a ``CompiledEnvelope`` (its pins included)."""
    from ..core.envelope import Envelope

    env = Envelope.from_blob(compiled.blob, compiled.digest)
    return build_map(env, compiled.admitted.modbus_addresses)


# ----------------------------------------------------------------- word codecs


def encode(value: int, words: int) -> list[int]:
    """A signed value → 1 or 2 unsigned 16-bit words (high word first); saturates."""
    return encode_all(((0, words),), (value,))


def encode_all(layout, values) -> list[int]:
    """``encode(values[index], words)`` for each (index, words) of ``layout``, back to back
    (one call per register image: this is on the path of every drive write)."""
    out = []
    for index, words in layout:
        v = values[index]
        if words == 1:
            v = INT16_MIN if v < INT16_MIN else INT16_MAX if v > INT16_MAX else v
            out.append(v & 0xFFFF)
        else:
            v = (INT32_MIN if v < INT32_MIN else INT32_MAX if v > INT32_MAX else v) & 0xFFFFFFFF
            out.append(v >> 16)
            out.append(v & 0xFFFF)
    return out


def decode(regs, words: int) -> int:
    """1 or 2 unsigned 16-bit words (high word first) → the signed value."""
    if words == 1:
        v = regs[0] & 0xFFFF
        return v - 0x10000 if v & 0x8000 else v
    v = ((regs[0] & 0xFFFF) << 16) | (regs[1] & 0xFFFF)
    return v - 0x100000000 if v & 0x80000000 else v


def u32(value: int) -> list[int]:
    v = value & 0xFFFFFFFF
    return [v >> 16, v & 0xFFFF]


def render_text(m: RegisterMap) -> str:
    """The map as a table for people."""
    lines = [f"device {m.device_id}: Modbus register map (0-based addresses; 32-bit values "
             "high word first)", "", "holding registers (PLC writes):",
             f"  H{H_OP_ACTION:<5} op_action      operator action code (refused unless "
             "operator actions are enabled)",
             f"  H{H_OP_ARG:<5} op_arg         operator argument (int16)",
             f"  H{H_HEARTBEAT:<5} heartbeat      change it with every proposal (link liveness)"]
    by_proposal = sorted(m.channels, key=lambda s: s.proposal)
    by_output = sorted(m.channels, key=lambda s: s.output)
    for s in by_proposal:
        span = f"H{s.proposal}" + (f"-{s.proposal + 1}" if s.words == 2 else "")
        lines.append(f"  {span:<6} {s.name:<14} proposal, {s.kind}, x{s.resolution} "
                     f"{s.unit}, scaled {s.lo}..{s.hi}" + (" (pinned)" if s.pinned else ""))
    lines.append(f"  H{m.session:<5} session        planner session: write a new value when the "
                 "PLC program starts")
    lines += ["", "input registers (PLC reads):"]
    for name, addr, words in STATUS_FIELDS:
        span = f"I{addr}" + (f"-{addr + 1}" if words == 2 else "")
        lines.append(f"  {span:<6} {name}" + (" (uint32)" if words == 2 else ""))
    for s in by_output:
        span = f"I{s.output}" + (f"-{s.output + 1}" if s.words == 2 else "")
        lines.append(f"  {span:<6} {s.name:<14} governed output, {s.kind}, x{s.resolution} "
                     f"{s.unit}" + (" (pinned)" if s.pinned else ""))
    ident = m.ident_words()
    lines += [f"  I{I_MAP_VERSION:<5} map_version    {ident[0]}",
              f"  I{I_ENVELOPE_HASH}-{I_ENVELOPE_HASH + 3} envelope_hash  "
              + " ".join(f"{w:#06x}" for w in ident[1:5])
              + f"  (sha256 {m.envelope_digest.hex()[:16]}…)",
              f"  I{I_MAP_HASH}-{I_MAP_HASH + 3} map_hash       "
              + " ".join(f"{w:#06x}" for w in ident[5:9])
              + f"  (sha256 {m.map_digest.hex()[:16]}…)"]
    lines += ["", f"coils: C{C_ESTOP_REQUEST} estop_request (write 1: operator e-stop)",
              f"discrete inputs: D{D_ESTOP} estop · D{D_TRIPPED} tripped · D{D_ARMED} armed · "
              f"D{D_LINK_OK} link_ok", "", "modes: " + ", ".join(
                  f"{i}={n}" for i, n in enumerate(m.modes)), "rules (I8 index):"]
    lines += [f"  {i:<4} {r}" for i, r in enumerate(m.rules)]
    return "\n".join(lines)


__all__ = ["RegisterMap", "ChannelSlot", "build_map", "map_of", "pin_problems", "encode",
           "decode", "u32", "render_text", "I_IDENT", "I_MAP_VERSION", "I_ENVELOPE_HASH",
           "I_MAP_HASH", "MAP_VERSION",
           "H_OP_ACTION", "H_OP_ARG", "H_HEARTBEAT", "H_PROPOSALS", "I_OUTPUTS",
           "C_ESTOP_REQUEST", "NO_RULE", "STATUS_FIELDS"]
