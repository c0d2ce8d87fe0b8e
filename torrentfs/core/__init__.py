"""Pure protocol cores."""
