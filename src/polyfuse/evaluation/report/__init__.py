"""Self-contained HTML reports of an analysis: the page (`html`), inline SVG charts (`svg`)
and embedded media (`media`)."""
