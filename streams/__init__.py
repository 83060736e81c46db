"""Where events enter: parsers for every input format, file decoding, and (later) the Faust app."""
