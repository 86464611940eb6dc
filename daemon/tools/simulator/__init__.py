"""daemon/tools/simulator"""
