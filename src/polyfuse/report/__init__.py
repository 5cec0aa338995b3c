"""Building blocks of self-contained HTML reports: inline SVG charts and embedded media."""
