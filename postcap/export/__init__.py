"""Exports: Postman collections and HAR files."""
