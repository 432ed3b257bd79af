"""placeholder"""
class PostgresEngine:
    def __init__(self, url, durability):
        raise NotImplementedError
