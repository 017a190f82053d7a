"""What a build folder holds: its plan, fingerprint, state, layout, stores, reports and status."""
