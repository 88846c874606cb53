"""Adapters: thin translators between a wire (MQTT, Modbus, serial) and core events."""
