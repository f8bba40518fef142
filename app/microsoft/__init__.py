"""microsoft"""
