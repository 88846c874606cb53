# ruff: noqa: E402, F401, I001 -- imports one by one with gc.collect() between (heap)
import gc
import egc
gc.collect()
import egr
gc.collect()
import egg
gc.collect()
import egmain
gc.collect()
egmain.main()
