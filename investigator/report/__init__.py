"""Reports: the JSON contract, text for the terminal, Markdown for the bundle."""
