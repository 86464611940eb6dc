"""daemon/governor"""
