"""reporter: Magnific API credit usage as a monthly PDF report in each manager's inbox."""

__version__ = "0.1.0"
