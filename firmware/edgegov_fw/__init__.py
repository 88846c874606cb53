# edgegov board firmware for full-core MicroPython boards (RP2040, ESP32, STM32 class).
