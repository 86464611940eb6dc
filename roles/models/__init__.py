"""roles/models"""
