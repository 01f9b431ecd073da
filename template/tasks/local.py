"""Your own tasks: `copier update` never touches this file.

Define tasks here as in any Invoke tasks file; `invoke --list` shows them without
registering them anywhere. The template's modules can be imported (see the example).
"""

# Example:
#
# from invoke import task
#
# from .settings import settings
#
#
# @task
# def image_name(c):
#     """Print the image this project builds."""
#     print(settings(c).image)
