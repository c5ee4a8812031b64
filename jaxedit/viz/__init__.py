"""Pictures: image grids and labelled strips (`grid`), metric plots (`plots`), videos (`video`)."""
