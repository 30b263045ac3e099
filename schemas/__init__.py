"""Wire formats shared with other systems: input events, exclusion events, dead-letter records."""
