"""May a governor restart on another envelope now? The check a gateway (``config.push``)
and a board (``firmware/edgegov_fw/envpush``) both run before an envelope change.

``swap_check(gov, new)`` returns ``(result, why, index)``: ``result`` 0 when ``new`` (a core
``Envelope``) may replace ``gov``'s, else the board link's result code (firmware/PROTOCOL.md,
Envelope push): 4 the governor is not DISARMED or TRIPPED, 3 ``new`` is for another device,
5 an output or a safe value would lie outside the new ranges. ``why`` tells 5 apart
(``OUT_RANGE`` an output outside the new initial-mode range, ``OUT_DROPPED`` a channel the
new envelope drops and ``OUT_RESCALED`` one whose resolution changes, each not at its safe
value, ``SAFE_RANGE`` a new safe value outside the new range); ``index`` is the channel
(in ``gov.env`` order, for ``SAFE_RANGE`` in ``new``'s).
"""

from .codes import ST_DISARMED, ST_TRIPPED

OK = 0
OTHER_DEVICE = 3
NOT_SAFE_STATE = 4
OUTSIDE = 5

OUT_RANGE = 0
OUT_DROPPED = 1
OUT_RESCALED = 2
SAFE_RANGE = 3


def swap_check(gov, new):
    if gov.state != ST_DISARMED and gov.state != ST_TRIPPED:
        return NOT_SAFE_STATE, 0, -1
    old = gov.env
    if new.device_id != old.device_id:
        return OTHER_DEVICE, 0, -1
    m = new.initial_mode
    for n in range(new.n):
        if not new.mode_min[m][n] <= new.ch_safe[n] <= new.mode_max[m][n]:
            return OUTSIDE, SAFE_RANGE, n
    for c in range(old.n):
        out = gov.out[c]
        n = new.ch_index.get(old.ch_names[c], -1)
        if n < 0:
            if out != old.ch_safe[c]:
                return OUTSIDE, OUT_DROPPED, c
        elif str(new.ch_res[n]) != str(old.ch_res[c]):
            if out != old.ch_safe[c]:
                return OUTSIDE, OUT_RESCALED, c
        elif not new.mode_min[m][n] <= out <= new.mode_max[m][n]:
            return OUTSIDE, OUT_RANGE, c
    return OK, 0, -1


__all__ = ["swap_check", "OK", "OTHER_DEVICE", "NOT_SAFE_STATE", "OUTSIDE", "OUT_RANGE",
           "OUT_DROPPED", "OUT_RESCALED", "SAFE_RANGE"]
