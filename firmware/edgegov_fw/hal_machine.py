# The HAL of a real MicroPython board: machine.Pin, machine.WDT (or an external kick pin),
# machine.UART (or the USB REPL stream), the flash block device for the lineage ring.
# Pins and budgets come from egboard.py, generated from boards/<name>/board.toml.
import gc
import sys
import time

import machine


class MachineHal:
    def __init__(self, b):
        self.period_ms = b.PERIOD_MS
        self.ticks_ms = time.ticks_ms
        self.ticks_diff = time.ticks_diff
        self.ticks_add = time.ticks_add
        self.sleep_ms = time.sleep_ms
        # e-stop output: fail-safe polarity. Asserted = the de-energised level, so a dead or
        # resetting board (pins floating/low) stops the machine.
        self._eo = machine.Pin(b.ESTOP_OUT, machine.Pin.OUT, value=0)
        self._eo_run = 1 if b.ESTOP_OUT_ACTIVE_LOW else 0
        self._ei = None
        if b.ESTOP_IN >= 0:
            self._ei = machine.Pin(b.ESTOP_IN, machine.Pin.IN, machine.Pin.PULL_UP)
            self._ei_pressed = 0 if b.ESTOP_IN_ACTIVE_LOW else 1
        self._wdt = None
        self._kick_pin = None
        self._kick = 0
        if b.WATCHDOG == "machine.WDT":
            self._wdt = machine.WDT(timeout=b.WDT_TIMEOUT_MS)
        elif b.WATCHDOG_KICK >= 0:
            self._kick_pin = machine.Pin(b.WATCHDOG_KICK, machine.Pin.OUT, value=0)
        if b.UART_ID >= 0:
            self._uart = machine.UART(b.UART_ID, 115200)
            self._in = self._uart
            self._out = self._uart
        else:  # the USB serial of the REPL
            import select

            self._uart = None
            self._poll = select.poll()
            self._poll.register(sys.stdin, select.POLLIN)
            self._in = sys.stdin.buffer
            self._out = sys.stdout.buffer

    def read(self, buf):
        if self._uart is not None:
            n = self._uart.any()
            return self._uart.readinto(buf, min(n, len(buf))) or 0 if n else 0
        k = 0
        while k < len(buf) and self._poll.poll(0):
            buf[k] = self._in.read(1)[0]
            k += 1
        return k

    def write(self, data):
        self._out.write(data)

    def set_estop(self, asserted):
        self._eo.value(1 - self._eo_run if asserted else self._eo_run)

    def estop_pressed(self):
        if self._ei is None:
            return None
        return self._ei.value() == self._ei_pressed

    def write_outputs(self, outputs):
        pass  # actuator outputs are board-specific (PWM, DAC, a drive bus): wire them here

    def kick(self):
        if self._wdt is not None:
            self._wdt.feed()
        elif self._kick_pin is not None:
            self._kick ^= 1
            self._kick_pin.value(self._kick)

    def reset_cause(self):
        return machine.reset_cause()

    def mem_free(self):
        return gc.mem_free()
