"""The HTTP face of jobtail: ``web.app.create_app`` builds the FastAPI app of DESIGN.md."""
