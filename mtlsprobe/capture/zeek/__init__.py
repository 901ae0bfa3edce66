"""The Zeek-log adapter: Zeek's ssl.log and x509.log read as the same Observations a capture gives."""
