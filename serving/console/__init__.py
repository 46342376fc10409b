"""The web console's static files (HTML, CSS, JS), served at /ui by serving.console_api."""
