"""Online detectors: where events are judged. Filled by the detector issues."""
