"""daemon/home"""
