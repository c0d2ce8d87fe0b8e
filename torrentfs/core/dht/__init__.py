"""The DHT's pure cores."""
