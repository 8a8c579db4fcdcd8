"""goalledger.plugins"""
