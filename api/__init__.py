"""goalledger.api"""
