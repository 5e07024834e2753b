"""The polite, safe HTTP client of the fetch stage: address safety, robots.txt and opt-outs, errors."""
