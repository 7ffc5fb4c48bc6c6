"""Who may use Glimpze: projects with their API keys and settings, and the dashboard's administrator."""
