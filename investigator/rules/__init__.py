"""Rule expressions (CEL) and explanation templates."""
