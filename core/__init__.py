"""goalledger.core"""
