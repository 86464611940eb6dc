"""daemon/api"""
