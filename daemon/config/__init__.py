"""daemon/config"""
