"""daemon/store"""
