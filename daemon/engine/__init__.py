"""daemon/engine"""
