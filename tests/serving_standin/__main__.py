from . import ensure_image

print(ensure_image())
