"""The internal-transfer service.

Empty on purpose: importing any part of the package (the domain, a port, the
composition root) must not bring in the web app. The app factory is
app.factory.create_app; wsgi.py is the WSGI entrypoint.
"""
