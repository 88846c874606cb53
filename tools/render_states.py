"""Render the governor's transition table (edgegov.core.states) as a Mermaid diagram.

    python tools/render_states.py            # print the diagram
    python tools/render_states.py --check    # exit 1 if README.md's copy is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgegov import names
from edgegov.core.states import G_ARMABLE, G_CAUSES_GONE, STATE_NAMES, TRANSITIONS

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- states:begin -->"
END = "<!-- states:end -->"
_GUARD = {G_CAUSES_GONE: " [causes gone, outputs safe]", G_ARMABLE: " [no trip cause]"}


def diagram() -> str:
    lines = ["```mermaid", "stateDiagram-v2", "    [*] --> TRIPPED: boot"]
    for src, action, dst, guard in TRANSITIONS:
        if src == dst:
            continue
        label = names.op(action) + _GUARD.get(guard, "")
        lines.append(f"    {STATE_NAMES[src]} --> {STATE_NAMES[dst]}: {label}")
    for state in ("DISARMED", "ARMED", "PAUSED"):
        lines.append(f"    {state} --> TRIPPED: any trip cause")
    lines.append("```")
    return "\n".join(lines)


def main() -> int:
    block = f"{BEGIN}\n{diagram()}\n{END}"
    if "--check" in sys.argv:
        text = README.read_text()
        return 0 if block in text else 1
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
