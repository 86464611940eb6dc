"""daemon/tools"""
