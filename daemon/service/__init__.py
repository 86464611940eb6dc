"""daemon/service"""
