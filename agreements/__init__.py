"""Machine-readable data-sharing agreements: the document, its lifecycle, lint and ODRL export."""
