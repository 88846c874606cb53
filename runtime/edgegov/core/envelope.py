"""The compiled envelope as the governor reads it: flat per-channel lists of scaled ints.

Built from the CBOR blob that ``edgegov envelope compile`` writes (layout documented in
``edgegov.config.compile``). Loading checks the blob's structure and every index in it, so
a corrupt or foreign blob is refused here with ``EnvelopeError`` rather than failing later
inside a decision.
"""

from . import cbor

FORMAT_MAGIC = "edgegov-envelope"
FORMAT_VERSION = 1
OPS = ("eq", "ne", "lt", "le", "gt", "ge")
# Rules every envelope has, besides the ones its config names.
BUILTIN_RULES = ("command", "estop", "fault", "operator", "state", "telemetry")


class EnvelopeError(ValueError):
    """A compiled envelope blob that is malformed or of an unknown version."""


def _need(ok, what):
    if not ok:
        raise EnvelopeError("envelope blob: " + what)


def _int(v, what, lo=None, hi=None):
    _need(isinstance(v, int) and not isinstance(v, bool), what + " must be an integer")
    _need(lo is None or v >= lo, what + " out of range")
    _need(hi is None or v <= hi, what + " out of range")
    return v


def _list(v, what, n=None):
    _need(isinstance(v, list), what + " must be an array")
    _need(n is None or len(v) == n, what + " has the wrong length")
    return v


class Envelope:
    """Read-only tables the governor evaluates against. Index channels by position."""

    def __init__(self, arr, digest=b""):
        _list(arr, "top level", 11)
        _need(arr[0] == FORMAT_MAGIC, "not an edgegov envelope")
        _need(arr[1] == FORMAT_VERSION, "unsupported version %r" % (arr[1],))
        self.digest = digest
        self.device_id = arr[2]
        self.modes = _list(arr[3], "modes")
        _need(len(self.modes) >= 1, "no modes")
        self.initial_mode = _int(arr[4], "initial mode", 0, len(self.modes) - 1)
        self.rules = _list(arr[10], "rules")
        self.rule_index = {}
        for i, rid in enumerate(self.rules):
            _need(isinstance(rid, str), "rule ids must be text")
            self.rule_index[rid] = i
        for rid in BUILTIN_RULES:
            _need(rid in self.rule_index, "missing built-in rule " + rid)
        self.r_command = self.rule_index["command"]
        self.r_estop = self.rule_index["estop"]
        self.r_fault = self.rule_index["fault"]
        self.r_operator = self.rule_index["operator"]
        self.r_state = self.rule_index["state"]
        self.r_telemetry = self.rule_index["telemetry"]
        self._channels(_list(arr[5], "channels"))
        self._inputs(_list(arr[6], "inputs"))
        self._interlocks(_list(arr[7], "interlocks"))
        self._link(arr[8])
        self._approval(arr[9])

    @classmethod
    def from_blob(cls, blob, digest=b""):
        try:
            arr = cbor.loads(blob)
        except cbor.CBORError as e:
            raise EnvelopeError("envelope blob is not valid CBOR: " + str(e)) from None
        return cls(arr, digest)

    def _rule(self, v, what):
        return _int(v, what, 0, len(self.rules) - 1)

    def _channels(self, chans):
        n = len(chans)
        _need(1 <= n <= 32, "1 to 32 channels")
        nm = len(self.modes)
        self.n = n
        self.ch_names = []
        self.ch_res = []  # resolution as text (for people; decisions use scaled ints)
        self.ch_units = []
        self.ch_index = {}
        self.ch_safe = [0] * n
        self.ch_stop = [0] * n
        self.ch_breach = [0] * n
        self.ch_on_rate = [0] * n
        self.ch_hold = [0] * n
        self.ch_accel = [0] * n
        self.ch_amin = [0] * n
        self.ch_amax = [0] * n
        self.ch_rule_accel = [0] * n
        self.ch_rule_approval = [0] * n
        self.mode_min = [[0] * n for _ in range(nm)]
        self.mode_max = [[0] * n for _ in range(nm)]
        self.mode_rate = [[0] * n for _ in range(nm)]
        self.mode_rule_min = [[0] * n for _ in range(nm)]
        self.mode_rule_max = [[0] * n for _ in range(nm)]
        self.mode_rule_rate = [[0] * n for _ in range(nm)]
        self.mode_amin = [[0] * n for _ in range(nm)]
        self.mode_amax = [[0] * n for _ in range(nm)]
        for i, c in enumerate(chans):
            _list(c, "channel", 14)
            _need(isinstance(c[0], str), "channel name must be text")
            _need(i == 0 or c[0] > self.ch_names[-1], "channels must be sorted by name")
            self.ch_names.append(c[0])
            self.ch_units.append(c[1])
            self.ch_res.append(c[2])
            self.ch_index[c[0]] = i
            self.ch_safe[i] = _int(c[3], "safe")
            self.ch_stop[i] = _int(c[4], "stop", 0, 1)
            self.ch_breach[i] = _int(c[5], "on_breach", 1, 5)
            self.ch_on_rate[i] = _int(c[6], "on_rate", 1, 5)
            self.ch_hold[i] = _int(c[7], "hold", 0, 1)
            self.ch_accel[i] = _int(c[8], "accel", 0)
            self.ch_amin[i] = _int(c[9], "approved_min")
            self.ch_amax[i] = _int(c[10], "approved_max")
            self.ch_rule_accel[i] = self._rule(c[11], "rule")
            self.ch_rule_approval[i] = self._rule(c[12], "rule")
            for m, lim in enumerate(_list(c[13], "per-mode limits", nm)):
                _list(lim, "mode limit", 8)
                self.mode_min[m][i] = _int(lim[0], "min")
                self.mode_max[m][i] = _int(lim[1], "max", self.mode_min[m][i])
                self.mode_rate[m][i] = _int(lim[2], "rate", 1)
                self.mode_rule_min[m][i] = self._rule(lim[3], "rule")
                self.mode_rule_max[m][i] = self._rule(lim[4], "rule")
                self.mode_rule_rate[m][i] = self._rule(lim[5], "rule")
                self.mode_amin[m][i] = _int(lim[6], "approved_min", None, self.mode_min[m][i])
                self.mode_amax[m][i] = _int(lim[7], "approved_max", self.mode_max[m][i])
                _need(self.mode_min[m][i] <= self.ch_safe[i] <= self.mode_max[m][i],
                      "safe value outside a mode's range")

    def _inputs(self, inputs):
        self.n_inputs = len(inputs)
        self.in_names = []
        self.in_index = {}
        self.in_number = []
        self.in_estop = []
        self.in_stale = []
        self.in_min = []
        self.in_max = []
        self.in_rule = []
        self.in_res = []  # resolution as text (for people; decisions use scaled ints)
        for i, c in enumerate(inputs):
            _list(c, "input", 9)
            _need(isinstance(c[0], str), "input name must be text")
            self.in_names.append(c[0])
            self.in_index[c[0]] = i
            self.in_number.append(bool(_int(c[1], "is_number", 0, 1)))
            self.in_estop.append(bool(_int(c[2], "is_estop", 0, 1)))
            self.in_stale.append(_int(c[3], "stale_after_ms", 1))
            self.in_min.append(_int(c[4], "min"))
            self.in_max.append(_int(c[5], "max", c[4]))
            self.in_rule.append(self._rule(c[8], "rule"))
            self.in_res.append(str(c[6]))

    def _interlocks(self, interlocks):
        self.n_interlocks = len(interlocks)
        self.il_names = []
        self.il_action = []
        self.il_rule = []
        self.il_conds = []
        self.il_limits = []
        for c in interlocks:
            _list(c, "interlock", 5)
            self.il_names.append(c[0])
            self.il_action.append(_int(c[1], "interlock action", 1, 5))
            self.il_rule.append(self._rule(c[2], "rule"))
            conds = []
            for cond in _list(c[3], "conditions"):
                _list(cond, "condition", 3)
                conds.append((_int(cond[0], "input", 0, self.n_inputs - 1),
                              _int(cond[1], "op", 0, len(OPS) - 1), _int(cond[2], "value")))
            _need(len(conds) >= 1, "interlock without conditions")
            limits = []
            for lim in _list(c[4], "limits"):
                _list(lim, "limit", 3)
                lo = lim[1] if lim[1] is None else _int(lim[1], "limit min")
                hi = lim[2] if lim[2] is None else _int(lim[2], "limit max")
                limits.append((_int(lim[0], "channel", 0, self.n - 1), lo, hi))
            self.il_conds.append(tuple(conds))
            self.il_limits.append(tuple(limits))

    def _link(self, link):
        self.link = link is not None
        if link is None:
            return
        _list(link, "link", 5)
        self.hold_after_ms = _int(link[0], "hold_after_ms", 1)
        self.trip_after_ms = _int(link[1], "trip_after_ms", self.hold_after_ms + 1)
        self.engage_after_ms = _int(link[2], "engage_after_ms", 1)
        self.r_link_hold = self._rule(link[3], "rule")
        self.r_link_trip = self._rule(link[4], "rule")

    def _approval(self, approval):
        self.approval = approval is not None
        self.approval_timeout_ms = 0
        self.grant_ms = 0
        if approval is not None:
            _list(approval, "approval", 2)
            self.approval_timeout_ms = _int(approval[0], "timeout_ms", 1)
            self.grant_ms = _int(approval[1], "grant_ms", 1)

    def mode_index(self, name):
        for i, m in enumerate(self.modes):
            if m == name:
                return i
        return -1


__all__ = ["Envelope", "EnvelopeError", "FORMAT_MAGIC", "FORMAT_VERSION", "OPS", "BUILTIN_RULES"]
