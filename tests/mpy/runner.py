# Runs the MicroPython-side core tests under the real MicroPython unix port.
#
#   micropython tests/mpy/runner.py [module ...]
#
# Each tests/mpy/test_*.py module defines test_* functions that use plain asserts (this
# file runs them without -O, so asserts are live). Prints one line per test and closes with
# "N passed, N failed"; exits 1 when anything failed.
import gc
import os
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../runtime")
sys.path.insert(0, HERE)


def _modules(argv):
    if argv:
        return argv
    names = [n[:-3] for n in os.listdir(HERE) if n.startswith("test_") and n.endswith(".py")]
    names.sort()
    return names


def main():
    passed = 0
    failed = 0
    for name in _modules(sys.argv[1:]):
        mod = __import__(name)
        tests = [t for t in dir(mod) if t.startswith("test_")]
        tests.sort()
        for t in tests:
            gc.collect()
            try:
                getattr(mod, t)()
                passed += 1
                print("PASS %s.%s" % (name, t))
            except Exception as e:  # report and continue with the next test
                failed += 1
                print("FAIL %s.%s: %s %r" % (name, t, type(e).__name__, e))
                sys.print_exception(e)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


main()
