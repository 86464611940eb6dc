"""daemon/tools/bench"""
