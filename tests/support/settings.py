import os


def postgres_admin_url() -> str:
    """Where the tests create their databases (trust auth on these machines)."""
    return os.environ.get("CYBERCLAIMS_TEST_POSTGRES",
                          "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
