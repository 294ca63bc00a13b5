"""Digitally summed slicing: every slice of a weight on its own analog tile, the slices'
outputs summed after their ADCs (the other way to slice, besides a sliced unit cell).
"""
