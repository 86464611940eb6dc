"""roles/plan"""
