"""The Zeek-log adapter: ssl.log and x509.log read as the same Observations a capture gives."""
